"""Checkpoints for the Backend: list, download (also in the background) and the computer check (doctor).

Each function takes the ``backend.Backend`` first; ``Backend`` lists them as its methods.
"""

from __future__ import annotations

import logging
import threading

from audiobook.errors import AudiobookError


def checkpoints(backend):
    """Every checkpoint the app can use, with whether it is on disk, where, and its size."""
    from audiobook import check, models

    whisper = None
    try:
        device = backend.tts.device()
    except AudiobookError:
        device = "cpu"
    if check.verify_enabled(backend.settings.verify, device):
        wanted = backend.settings.verify_model.strip()
        whisper = wanted if wanted and wanted != "auto" else (check.GPU_MODEL if device.startswith("cuda") else check.CPU_MODEL)
    return models.list_checkpoints(backend.settings.models_dir or None, whisper)


def download_model(backend, name: str, on_progress=None):
    """Download one checkpoint (into the models folder when set, else the Hugging Face cache), resuming
    a broken earlier download; ``on_progress`` gets ``models.DownloadProgress``. Returns the checkpoint."""
    from audiobook import models

    return models.download(name, backend.settings.models_dir or None, on_progress)


def start_download(backend, name: str):
    """Download a checkpoint in a background thread; follow it with ``download_state``.

    One download at a time; an unknown name or a download already running is an AudiobookError.
    """
    from audiobook import models

    name = models.check_name(name)
    with backend._download_guard:
        if backend._download is not None and backend._download.running:
            raise AudiobookError(f"{backend._download.name} is downloading; wait for it to finish before starting another.")
        state = backend._download = models.DownloadState(name=name, running=True)

    def report(p) -> None:
        state.progress = p

    def work() -> None:
        try:
            backend.download_model(name, report)
            state.done = True
        except AudiobookError as e:
            state.error = str(e)
        except Exception as e:  # the thread must never die silently: the page shows the sentence
            logging.getLogger(__name__).exception("download failed")
            state.error = (f"The download of {name} stopped on an unexpected error ({type(e).__name__}: {e}); "
                           "download it again to resume.")
        finally:
            state.running = False

    threading.Thread(target=work, name=f"download-{name}", daemon=True).start()
    return backend.download_state()


def download_state(backend):
    """A copy of the background download's state (an empty one when none was started)."""
    from dataclasses import replace as copy

    from audiobook import models

    return copy(backend._download) if backend._download is not None else models.DownloadState()


def doctor(backend, live: bool = True, on_step=None):
    """Check this computer (device, checkpoints, the fast engine against qwen_tts, speed, memory).

    Returns ``doctor.DoctorReport``. When the engine disagrees with qwen_tts, the ``engine``
    setting is saved as ``qwen_tts`` (the report says so). Refused while a render runs.
    """
    from audiobook import doctor

    if backend.tts.lock.held_by_other() and backend.tts.lock.holder.startswith("a render"):
        raise AudiobookError("A render is running; check this computer when it has finished or been stopped.")
    with backend.tts.exclusive("a check of this computer"):
        report = doctor.run_doctor(backend.tts, [c.to_dict() for c in backend.checkpoints()], live, on_step)
    if report.engine_switched:
        backend.save_settings(engine="qwen_tts")
    return report

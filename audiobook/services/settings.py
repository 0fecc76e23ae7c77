"""Settings for the Backend: check, save, reset and apply them (model settings wait while the model is busy).

Each function takes the ``backend.Backend`` first; ``Backend`` lists them as its methods.
"""

from __future__ import annotations

from typing import Callable

from audiobook.errors import AudiobookError, file_errors
from audiobook.settings import FOLDER_SETTINGS, Settings, load_settings
from audiobook.settings import save_settings as write_settings

# Settings that pick the model or how it runs: they wait while a render holds the model.
MODEL_KEYS = ("device", "dtype", "attention_mode", "model_size", "models_dir", "engine")


def with_overrides(backend, s: Settings) -> Settings:
    return s.updated(models_dir=backend._models_dir_override) if backend._models_dir_override else s


def save_settings(backend, **changes) -> Settings:
    """Validate, save to ``user_settings.json`` and apply; raise AudiobookError naming a bad key."""
    refuse_folder_changes(backend, changes)
    on_disk = load_settings(backend.settings_path) if backend.settings_path.exists() else Settings()
    new = on_disk.updated(**changes)
    check_model_settings_free(backend, with_overrides(backend, new))
    with file_errors(f"save the settings to {backend.settings_path}"):
        write_settings(new, backend.settings_path)
    backend.apply_settings(with_overrides(backend, new))
    return new


def settings_errors(backend, values: dict, label: Callable[[str], str] = str) -> dict[str, str]:
    """Check each value on its own against the current settings; {name: sentence} for the bad ones.

    ``label`` names a setting in the sentences the way the caller shows it.
    """
    errors: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, str) and Settings.kind(name) in (int, float):
            errors[name] = f"{label(name)} must be a number."
            continue
        if value is None:
            errors[name] = f"{label(name)} needs a value."
            continue
        try:
            backend.settings.updated(**{name: value})
        except AudiobookError as e:
            errors[name] = str(e)
    return errors


def save_changed_settings(backend, values: dict, label: Callable[[str], str] = str) -> dict[str, str]:
    """Save a form's values unless one is bad; returns {name: sentence} (empty when saved).

    A ``models_dir`` equal to this process's ``--models-dir`` is left out: it is for this run only.
    """
    override = backend.models_dir_override
    if override and values.get("models_dir") == override:
        values = {k: v for k, v in values.items() if k != "models_dir"}
    errors = backend.settings_errors(values, label)
    if not errors:
        backend.save_settings(**values)
    return errors


def reset_settings(backend) -> Settings:
    """Restore the defaults (and save them); folder settings stay as they are while they are locked."""
    new = Settings()
    if backend.lock_folders:
        on_disk = load_settings(backend.settings_path) if backend.settings_path.exists() else Settings()
        new = new.updated(**{k: getattr(on_disk, k) for k in FOLDER_SETTINGS})
    check_model_settings_free(backend, with_overrides(backend, new))
    with file_errors(f"save the settings to {backend.settings_path}"):
        write_settings(new, backend.settings_path)
    backend.apply_settings(with_overrides(backend, new))
    return backend.settings


def refuse_folder_changes(backend, changes: dict) -> None:
    if not backend.lock_folders:
        return
    changed = [k for k in FOLDER_SETTINGS if k in changes and changes[k] != getattr(backend.settings, k)]
    if changed:
        raise AudiobookError(
            f"The folder setting{'s' if len(changed) > 1 else ''} {', '.join(repr(k) for k in changed)} cannot be "
            "changed from a page served to the network; change it on this computer in user_settings.json, "
            "or in a page started without --listen or --share.")


def check_model_settings_free(backend, new: Settings) -> None:
    changed = [k for k in MODEL_KEYS if getattr(new, k) != getattr(backend.settings, k)]
    if changed and backend.tts.lock.held_by_other():
        raise AudiobookError(f"The setting '{changed[0]}' cannot change while the model is busy with "
                             f"{backend.tts.lock.holder}; save it when that is done.")


def apply_settings(backend, new: Settings) -> None:
    """Use ``new`` in this process without saving it (unloads the model when device, dtype or attention change).

    Settings that change which model runs, or how, cannot change while a render holds the model.
    """
    check_model_settings_free(backend, new)
    reload_keys = ("device", "dtype", "attention_mode")
    if any(getattr(new, k) != getattr(backend.settings, k) for k in reload_keys):
        backend.tts.unload()
    backend.settings = new
    backend.tts.settings = new

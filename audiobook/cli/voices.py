"""The voice library's commands: ``voices`` and ``voice design|clone|preset|delete|rename|export|import``."""

from __future__ import annotations

import sys

from audiobook.errors import AudiobookError
from audiobook.voices import Voice


def _print_voice(voice: Voice) -> None:
    what = {"designed": voice.description, "cloned": voice.reference_text or "(no transcript: x-vector only)",
            "preset": voice.speaker + (f" ({voice.instruct})" if voice.instruct else "")}[voice.kind]
    print(f"{voice.name}\t{voice.kind}\t{voice.language}\t{what}")


def cmd_voices(args) -> int:
    backend = args.open_backend(models_dir=args.models_dir)
    voices = backend.list_voices()
    if not voices:
        print(f"No saved voices in {backend.voices.root}.")
    for v in voices:
        _print_voice(v)
    return 0


def cmd_voice(args) -> int:
    """voice design|clone|preset NAME ... (saves the voice and writes its preview) and voice delete|rename|export|import."""
    backend = args.open_backend(models_dir=args.models_dir)
    if args.action == "delete":
        backend.delete_voice(args.name)
        print(f"Deleted the voice '{args.name}'.")
        return 0
    if args.action == "rename":
        voice = backend.rename_voice(args.name, args.new_name, overwrite=args.overwrite)
        print(f"Renamed to '{voice.name}' ({voice.folder}).")
        return 0
    if args.action == "export":
        print(backend.export_voice(args.name, args.output))
        return 0
    if args.action == "import":
        voice = backend.import_voice(args.zip, overwrite=args.overwrite, name=args.name)
        print(f"Imported the voice '{voice.name}' into {voice.folder}.")
        return 0
    if backend.voices.exists(args.name) and not args.overwrite:
        # ask before the slow part, not after it
        raise AudiobookError(f"A voice called '{args.name}' already exists; add --overwrite to replace it.")
    if args.action == "design":
        preview = backend.preview_design(args.description, args.language, args.text, args.seed)
    elif args.action == "clone":
        preview = backend.preview_clone(args.audio, args.text or "", args.language)
    else:
        preview = backend.preview_preset(args.speaker, args.instruct or "", args.language)
    for warning in preview.warnings:
        print(f"Note: {warning}", file=sys.stderr)
    voice = backend.save_voice(preview, args.name, overwrite=args.overwrite)
    print(f"Saved the {voice.kind} voice '{voice.name}' in {voice.folder}.")
    print(voice.preview_path)
    return 0


"""python -m obserae_forensics -> the CLI."""

from __future__ import annotations

from .cli import app

if __name__ == "__main__":
    app()

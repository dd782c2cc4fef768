"""``python -m slocast`` runs the CLI."""

from slocast.cli import main

main()

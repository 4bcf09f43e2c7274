"""``python -m caffepy.cli``: the ``caffepy`` command."""

from caffepy.cli import main

main()

"""``python -m emort``: the ``emort`` command, where its script is not on PATH."""

from emort.cli.entry import main

if __name__ == "__main__":
    main()

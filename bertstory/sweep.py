"""``python -m bertstory.sweep``: see :mod:`bertstory.results.sweep`."""

from bertstory.results.sweep import main

if __name__ == "__main__":
    main()

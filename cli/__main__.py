"""``python -m ostraca.cli …`` (also under ``torchrun``): the ``ostraca`` command line."""

from . import main

main()

"""``python -m partaware ...`` is ``partctl ...``: how a Ray Job runs the driver without the console script."""

from partaware.cli import main

main()

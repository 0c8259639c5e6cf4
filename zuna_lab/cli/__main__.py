"""python -m zuna_lab.cli"""
import sys

from .commands import main

sys.exit(main())

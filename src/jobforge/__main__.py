from __future__ import annotations

from jobforge.cli import main

main()

"""``python -m lstmkit …`` (what torchrun launches: ``torchrun --nproc-per-node 2 -m lstmkit train …``)."""
from .cli import main

raise SystemExit(main())

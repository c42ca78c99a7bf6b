import sys

from attn_core.cli import main

sys.exit(main())

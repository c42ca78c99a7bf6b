import sys

from attn_core.cli.main import main

sys.exit(main())

"""`python3 -m instance_agent --config s3://bucket/runs/<run_id>/attempts/<n>/agent-config.json`."""

from __future__ import annotations

import sys

from .main import main

sys.exit(main())

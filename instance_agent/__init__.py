"""runctl's instance agent: stages code and data, runs the training script, reports the result.

Shipped alone (a zip of this folder) and run by the instance's python3: standard library and
boto3 only, Python 3.9 compatible, no imports from the rest of the project.
"""

from __future__ import annotations

"""Static EC2 prices: on-demand list prices, and the fallback when spot history is unreachable.

On-demand prices are AWS's public list prices for Linux, shared tenancy, in us-east-1, as published
on https://aws.amazon.com/ec2/pricing/on-demand/ in LIST_PRICES_AS_OF (after the June 2025 price cut
for P4d/P5). They were transcribed by hand, not fetched (nothing here calls the network); other
regions cost up to ~30% more, so outside us-east-1 they are an estimate. Refresh them with:
    aws pricing get-products --region us-east-1 --service-code AmazonEC2 --filters \
      Type=TERM_MATCH,Field=instanceType,Value=g5.xlarge \
      Type=TERM_MATCH,Field=location,Value="US East (N. Virginia)" \
      Type=TERM_MATCH,Field=operatingSystem,Value=Linux Type=TERM_MATCH,Field=tenancy,Value=Shared \
      Type=TERM_MATCH,Field=preInstalledSw,Value=NA Type=TERM_MATCH,Field=capacitystatus,Value=Used
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

LIST_PRICES_AS_OF: Final = "2025-06"
LIST_PRICES_REGION: Final = "us-east-1"

# A spot price estimate when the spot price history cannot be read: this fraction of on-demand.
# Spot prices of the common GPU types in us-east-1 have mostly sat between 30% and 50% of
# on-demand; 0.4 is the middle of that, a rough figure labelled "static-spot-estimate".
SPOT_ESTIMATE_FRACTION: Final = 0.4

# USD per instance-hour, Linux on-demand, us-east-1.
ON_DEMAND_USD_PER_HOUR: Final[Mapping[str, float]] = {
    # G4dn: NVIDIA T4
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.4xlarge": 1.204,
    "g4dn.8xlarge": 2.176,
    "g4dn.12xlarge": 3.912,
    "g4dn.16xlarge": 4.352,
    "g4dn.metal": 7.824,
    # G5: NVIDIA A10G
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g5.8xlarge": 2.448,
    "g5.12xlarge": 5.672,
    "g5.16xlarge": 4.096,
    "g5.24xlarge": 8.144,
    "g5.48xlarge": 16.288,
    # G6: NVIDIA L4
    "g6.xlarge": 0.8048,
    "g6.2xlarge": 0.9776,
    "g6.4xlarge": 1.3232,
    "g6.8xlarge": 2.0144,
    "g6.12xlarge": 4.6016,
    "g6.16xlarge": 3.3968,
    "g6.24xlarge": 6.6752,
    "g6.48xlarge": 13.3504,
    # P3: NVIDIA V100
    "p3.2xlarge": 3.06,
    "p3.8xlarge": 12.24,
    "p3.16xlarge": 24.48,
    # P4d: NVIDIA A100; P5: NVIDIA H100 (both after the June 2025 cut)
    "p4d.24xlarge": 21.96,
    "p5.48xlarge": 55.04,
    # General purpose and compute (data preparation, CPU training, smoke tests)
    "m5.large": 0.096,
    "m5.xlarge": 0.192,
    "m5.2xlarge": 0.384,
    "m5.4xlarge": 0.768,
    "m5.8xlarge": 1.536,
    "m5.12xlarge": 2.304,
    "m5.16xlarge": 3.072,
    "m5.24xlarge": 4.608,
    "m6i.large": 0.096,
    "m6i.xlarge": 0.192,
    "m6i.2xlarge": 0.384,
    "m6i.4xlarge": 0.768,
    "m6i.8xlarge": 1.536,
    "m6i.12xlarge": 2.304,
    "m6i.16xlarge": 3.072,
    "m6i.24xlarge": 4.608,
    "m6i.32xlarge": 6.144,
    "c5.large": 0.085,
    "c5.xlarge": 0.17,
    "c5.2xlarge": 0.34,
    "c5.4xlarge": 0.68,
    "c5.9xlarge": 1.53,
    "c5.12xlarge": 2.04,
    "c5.18xlarge": 3.06,
    "c5.24xlarge": 4.08,
    "c6i.large": 0.085,
    "c6i.xlarge": 0.17,
    "c6i.2xlarge": 0.34,
    "c6i.4xlarge": 0.68,
    "c6i.8xlarge": 1.36,
    "c6i.12xlarge": 2.04,
    "c6i.16xlarge": 2.72,
    "c6i.24xlarge": 4.08,
    "c6i.32xlarge": 5.44,
    "t3.micro": 0.0104,
    "t3.small": 0.0208,
    "t3.medium": 0.0416,
    "t3.large": 0.0832,
    "t3.xlarge": 0.1664,
    "t3.2xlarge": 0.3328,
}

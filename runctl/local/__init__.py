"""Local mode: the same ASL and Lambda code against moto, with local processes as instances.

Every adapter that touches moto's internals lives in this package (moto is pinned exactly):
- emulator.py: the in-process moto server, Step Functions execution switched on;
- lambda_bridge.py: Lambda invocations routed to our handlers in-process;
- instances.py + imds.py: each launched EC2 instance is a local directory with an IMDSv2 endpoint;
- ssm_bridge.py: SSM commands sent to a local instance really run there, with bash;
- deploy.py: the stack's resources, created in the emulator.
"""

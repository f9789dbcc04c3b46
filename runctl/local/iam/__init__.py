"""IAM enforced in local mode: the synthesized template's policies, evaluated on each request
the Lambdas and the instance agent make to the emulator (docs/architecture.md, IAM in local
mode)."""

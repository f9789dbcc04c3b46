"""runctl's Lambda functions: one handler per step (handlers -> logic -> dal/integrations)."""

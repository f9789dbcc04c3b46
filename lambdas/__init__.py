"""runctl's Lambda functions: one handler per state machine step (handlers -> logic -> dal/integrations)."""

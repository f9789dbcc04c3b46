"""runctl client: the CLI, the SDK and local mode."""

"""Pydantic models shared by the Lambdas, the client and local mode."""

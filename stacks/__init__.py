"""The runctl CDK stack: one construct per concern, composed by RunctlStack."""

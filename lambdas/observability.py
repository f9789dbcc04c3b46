"""Powertools logger, tracer and metrics, created once for every handler."""

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "runctl"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace="runctl")

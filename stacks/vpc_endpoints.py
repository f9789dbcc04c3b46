"""VPC endpoints for instances in private subnets (`runctl:vpcEndpoints: true`).

An instance in a subnet without a route to the internet reaches AWS only through endpoints in its
VPC. What it calls:
- the SSM agent (Bootstrap and StartAgent are Run Command): ssm, ssmmessages, ec2messages;
- the agent (instance_agent/): s3 (code, data, checkpoints, the agent zip in the CDK asset
  bucket), dynamodb (run progress), logs (the run log), states (task heartbeat/success/failure).
Nothing on the instance calls the EC2 API (instance metadata is IMDS, not an endpoint), so there
is no ec2 endpoint. The Lambdas run outside any VPC and need none.

S3 and DynamoDB get gateway endpoints (free; routes in the given route tables). The others are
interface endpoints with private DNS, so the default SDK endpoint names resolve to them; each has
one network interface per subnet (at most one subnet per Availability Zone), guarded by a
security group that admits HTTPS from the instances' security group only.
"""

from __future__ import annotations

from typing import Any, Final

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

GATEWAY_SERVICES: Final = ("s3", "dynamodb")
INTERFACE_SERVICES: Final = ("ssm", "ssmmessages", "ec2messages", "logs", "states")
HTTPS: Final = 443
# A security group with no egress rules gets EC2's "all outbound"; this rule matches no traffic
# (the same one CDK writes for allowAllOutbound: false). Endpoints only answer, never connect out.
NO_EGRESS: Final = ec2.CfnSecurityGroup.EgressProperty(
    ip_protocol="icmp",
    from_port=252,
    to_port=86,
    cidr_ip="255.255.255.255/32",
    description="no outbound traffic: endpoints only answer",
)


class VpcEndpoints(Construct):
    """The gateway and interface endpoints the instances need in `vpc_id`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc_id: str,
        route_table_ids: tuple[str, ...],
        subnet_ids: tuple[str, ...],
        instance_security_group: ec2.CfnSecurityGroup,
    ) -> None:
        super().__init__(scope, construct_id)

        self.security_group = ec2.CfnSecurityGroup(
            self,
            "SecurityGroup",
            group_description="runctl VPC endpoints: HTTPS from runctl instances only",
            vpc_id=vpc_id,
            security_group_egress=[NO_EGRESS],
        )
        self.ingress = ec2.CfnSecurityGroupIngress(
            self,
            "HttpsFromInstances",
            group_id=self.security_group.attr_group_id,
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            source_security_group_id=instance_security_group.attr_group_id,
            description="HTTPS from runctl training instances",
        )
        self.endpoints: dict[str, ec2.CfnVPCEndpoint] = {}
        for service in GATEWAY_SERVICES:
            self._add_endpoint(vpc_id, service, "Gateway", route_table_ids=list(route_table_ids))
        for service in INTERFACE_SERVICES:
            self._add_endpoint(
                vpc_id,
                service,
                "Interface",
                private_dns_enabled=True,
                subnet_ids=list(subnet_ids),
                security_group_ids=[self.security_group.attr_group_id],
            )

    def _add_endpoint(
        self, vpc_id: str, service: str, endpoint_type: str, **placement: Any
    ) -> None:
        """One endpoint of `service`, its logical id e.g. SsmInterface; `placement` says where
        (route tables for a gateway, subnets and group for an interface)."""
        self.endpoints[service] = ec2.CfnVPCEndpoint(
            self,
            f"{service.capitalize()}{endpoint_type}",
            vpc_id=vpc_id,
            service_name=f"com.amazonaws.{Stack.of(self).region}.{service}",
            vpc_endpoint_type=endpoint_type,
            **placement,
        )

"""moto's server, taught the CloudFormation parts BEACON's template uses that moto 5 leaves out.

moto's CloudFormation skips resource types it has no model for and ignores properties it does not
read. For the template in deploy/template.yaml that would hide exactly what the deploy test checks,
so this launcher adds, on moto's own backends (the same calls its S3, CloudWatch and Step Functions
APIs make):

- AWS::CloudWatch::Alarm (moto has no CloudFormation model for it): PutMetricAlarm.
- AWS::S3::Bucket: PublicAccessBlockConfiguration and LifecycleConfiguration (moto applies only
  BucketEncryption and Tags).
- AWS::S3::BucketPolicy: PutBucketPolicy.
- AWS::StepFunctions::StateMachine: DefinitionS3Location and DefinitionSubstitutions (moto reads
  only DefinitionString, as is).

Fixes: a bucket policy statement applies only when its Condition holds (moto 5 denies when a
condition does not hold, even for a Deny statement), evaluated as for a request over TLS (moto
stands in for AWS's HTTPS endpoints; the loopback hop is plain HTTP only because it is a test),
so a TLS-only bucket policy lets these requests through as AWS does; a stack created by
executing a change set gets its Outputs (moto computes them only when the stack is created
directly or updated); and a log group updated with its stack stays (moto has no update for
AWS::Logs::LogGroup and records it as gone); and a CommaDelimitedList parameter kept with
UsePreviousValue is passed as it was given (moto keeps it as a list, then fails to split it).

Everything else is moto unchanged. Run as `python -c <this file> -H 127.0.0.1 -p 0`.
"""

import json
import sys
from typing import Any

from moto.cloudformation.models import ChangeSet
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.common_models import CloudFormationModel
from moto.logs.models import LogGroup, logs_backends
from moto.iam.access_control import IAMPolicyStatement, PermissionResult
from moto.s3.models import FakeBucket, s3_backends
from moto.stepfunctions.models import StateMachine
from moto.utilities.utils import get_partition


def _s3(account_id: str, region_name: str):
    return s3_backends[account_id][get_partition(region_name)]


class CfnAlarm(CloudFormationModel):
    """An alarm created through CloudFormation; Ref gives its name, as on AWS."""

    # moto's models find their service from their module.
    __module__ = "moto.cloudwatch.models"

    def __init__(self, name: str, arn: str):
        self.name = name
        self.arn = arn

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return self.arn

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        p = cloudformation_json["Properties"]
        backend = cloudwatch_backends[account_id][region_name]
        alarm = backend.put_metric_alarm(
            name=resource_name,
            namespace=p.get("Namespace"),
            metric_name=p.get("MetricName"),
            comparison_operator=p["ComparisonOperator"],
            evaluation_periods=int(p["EvaluationPeriods"]),
            period=int(p["Period"]) if "Period" in p else None,
            threshold=float(p["Threshold"]),
            statistic=p.get("Statistic"),
            description=p.get("AlarmDescription"),
            dimensions=[{"Name": d["Name"], "Value": d["Value"]} for d in p.get("Dimensions", [])],
            alarm_actions=p.get("AlarmActions", []),
            datapoints_to_alarm=int(p["DatapointsToAlarm"]) if "DatapointsToAlarm" in p else None,
            extended_statistic=p.get("ExtendedStatistic"),
            ok_actions=p.get("OKActions", []),
            insufficient_data_actions=p.get("InsufficientDataActions", []),
            unit=p.get("Unit"),
            actions_enabled=p.get("ActionsEnabled", True) not in (False, "false"),
            treat_missing_data=p.get("TreatMissingData"),
        )
        return CfnAlarm(resource_name, alarm.alarm_arn)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
        cls.delete_from_cloudformation_json(original_resource.name, cloudformation_json, account_id, region_name)
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
        cloudwatch_backends[account_id][region_name].delete_alarms([resource_name])


class CfnBucketPolicy(CloudFormationModel):
    __module__ = "moto.s3.models"

    def __init__(self, bucket: str):
        self.bucket = bucket

    @property
    def physical_resource_id(self) -> str:
        return self.bucket

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::BucketPolicy"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        p = cloudformation_json["Properties"]
        _s3(account_id, region_name).put_bucket_policy(p["Bucket"], json.dumps(p["PolicyDocument"]).encode())
        return CfnBucketPolicy(p["Bucket"])

    @classmethod
    def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
        bucket = cloudformation_json["Properties"]["Bucket"]
        _s3(account_id, region_name).delete_bucket_policy(bucket)


def _bucket_extras(bucket_name: str, properties: dict, account_id: str, region_name: str) -> None:
    backend = _s3(account_id, region_name)
    if "PublicAccessBlockConfiguration" in properties:
        backend.put_public_access_block(bucket_name, properties["PublicAccessBlockConfiguration"])
    if "LifecycleConfiguration" in properties:
        rules = []
        for rule in properties["LifecycleConfiguration"]["Rules"]:
            api = {"ID": rule.get("Id"), "Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
            if "ExpirationInDays" in rule:
                api["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
            if "NoncurrentVersionExpiration" in rule:
                days = rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
                api["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(days)}
            if "AbortIncompleteMultipartUpload" in rule:
                days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
                api["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(days)}
            rules.append(api)
        backend.put_bucket_lifecycle_configuration(bucket_name, rules)


# What every request to the emulator stands for: a signed request over TLS.
_REQUEST_CONTEXT = {"aws:SecureTransport": "true"}


def _condition_holds(condition: dict) -> bool:
    """Bool and StringEquals on the keys of the request context; other keys and operators hold,
    as moto assumes."""
    for operator, tests in condition.items():
        if operator not in ("Bool", "StringEquals"):
            continue
        for key, expected in tests.items():
            actual = _REQUEST_CONTEXT.get(key)
            expected = expected if isinstance(expected, list) else [expected]
            if actual is not None and actual.lower() not in [str(e).lower() for e in expected]:
                return False
    return True


def _bucket_permission(self, action: str, resource: str):
    if self.policy is None:
        return PermissionResult.NEUTRAL
    statements = json.loads(self.policy.decode())["Statement"]
    permitted = False
    for statement in statements if isinstance(statements, list) else [statements]:
        if not _condition_holds(statement.get("Condition", {})):
            continue
        unconditional = {k: v for k, v in statement.items() if k != "Condition"}
        result = IAMPolicyStatement(unconditional).is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            return result
        permitted = permitted or result == PermissionResult.PERMITTED
    return PermissionResult.PERMITTED if permitted else PermissionResult.NEUTRAL


FakeBucket.get_permission = _bucket_permission


_create_bucket = FakeBucket.create_from_cloudformation_json.__func__


def _create_bucket_with_extras(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    bucket = _create_bucket(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    _bucket_extras(bucket.name, cloudformation_json.get("Properties", {}), account_id, region_name)
    return bucket


FakeBucket.create_from_cloudformation_json = classmethod(_create_bucket_with_extras)


def _substituted(properties: dict, account_id: str, region_name: str) -> dict:
    substitutions = properties.get("DefinitionSubstitutions") or {}
    definition = properties.get("DefinitionString", "")
    location = properties.get("DefinitionS3Location")
    if location:
        stored = _s3(account_id, region_name).get_object(location["Bucket"], location["Key"])
        definition = stored.value.decode("utf-8")
    for key, value in substitutions.items():
        definition = definition.replace("${" + key + "}", str(value))
    return {**properties, "DefinitionString": definition}


def _with_definition(properties: dict, account_id: str, region_name: str) -> dict:
    return {**properties, "Properties": _substituted(properties.get("Properties", {}), account_id, region_name)}


_create_state_machine = StateMachine.create_from_cloudformation_json.__func__
_update_state_machine = StateMachine.update_from_cloudformation_json.__func__


def _create_state_machine_with_definition(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    cloudformation_json = _with_definition(cloudformation_json, account_id, region_name)
    return _create_state_machine(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)


def _update_state_machine_with_definition(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
    cloudformation_json = _with_definition(cloudformation_json, account_id, region_name)
    return _update_state_machine(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name)


StateMachine.create_from_cloudformation_json = classmethod(_create_state_machine_with_definition)
StateMachine.update_from_cloudformation_json = classmethod(_update_state_machine_with_definition)


_apply_change_set = ChangeSet.apply


def _apply_change_set_and_outputs(self) -> None:
    # A CommaDelimitedList kept with UsePreviousValue arrives as the list moto stored; moto
    # would split it again.
    self.parameters = {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in self.parameters.items()}
    _apply_change_set(self)
    self.stack.template_dict = self.template_dict
    self.stack.output_map = self.stack._create_output_map()


ChangeSet.apply = _apply_change_set_and_outputs


def _update_log_group(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
    """AWS::Logs::LogGroup on a stack update (moto has no update for it and records the log group
    as gone, so a later Fn::GetAtt on it fails): the retention changes in place; a new name
    replaces the group."""
    properties = cloudformation_json["Properties"]
    name = properties.get("LogGroupName", original_resource.name)
    if name != original_resource.name:
        original_resource.delete(account_id, region_name)
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)
    backend = logs_backends[account_id][region_name]
    if "RetentionInDays" in properties:
        backend.put_retention_policy(name, properties["RetentionInDays"])
    else:
        backend.delete_retention_policy(name)
    return original_resource


LogGroup.update_from_cloudformation_json = classmethod(_update_log_group)


if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])

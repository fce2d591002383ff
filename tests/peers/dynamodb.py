#!/usr/bin/env python3
"""Drives a DynamoDB API on loopback (moto's server) for the demo:

    dynamodb.py ENDPOINT create TABLE [VIEW_TYPE]   prints the table ARN
    dynamodb.py ENDPOINT demo-writes TABLE          a few inserts, updates, deletes
    dynamodb.py ENDPOINT workload TABLE KEYS OPS SEED  OPS writes over KEYS keys
"""
import random
import sys
import time

import boto3


def client(endpoint):
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
    )


def create(ddb, table, view_type="NEW_AND_OLD_IMAGES"):
    out = ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type},
    )
    print(out["TableDescription"]["TableArn"])


def demo_writes(ddb, table):
    for i in range(1, 4):
        ddb.put_item(
            TableName=table,
            Item={"pk": {"S": f"order-{i}"}, "status": {"S": "placed"}, "total": {"N": f"{i}9.95"}},
        )
        time.sleep(0.3)
    ddb.update_item(
        TableName=table,
        Key={"pk": {"S": "order-1"}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "shipped"}},
    )
    time.sleep(0.3)
    ddb.delete_item(TableName=table, Key={"pk": {"S": "order-2"}})


def workload(ddb, table, keys, ops, seed):
    """Inserts, updates and deletes spread over `keys` keys, deterministic per seed."""
    rng = random.Random(seed)
    live = set()
    for n in range(ops):
        pk = f"item-{rng.randrange(keys)}"
        if pk not in live:
            ddb.put_item(TableName=table, Item={"pk": {"S": pk}, "n": {"N": str(n)}, "tag": {"S": f"v{n}"}})
            live.add(pk)
        elif rng.random() < 0.25:
            ddb.delete_item(TableName=table, Key={"pk": {"S": pk}})
            live.discard(pk)
        else:
            ddb.put_item(TableName=table, Item={"pk": {"S": pk}, "n": {"N": str(n)}, "tag": {"S": f"v{n}"}})


if __name__ == "__main__":
    endpoint, command, table = sys.argv[1:4]
    ddb = client(endpoint)
    if command == "create":
        create(ddb, table, *sys.argv[4:5])
    elif command == "workload":
        workload(ddb, table, *map(int, sys.argv[4:7]))
    elif command == "demo-writes":
        demo_writes(ddb, table)
    else:
        sys.exit(f"unknown command {command}")

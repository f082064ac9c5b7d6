"""A python task for the inventory tests: each bucket of the account with its tags."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


def buckets_with_tags(session: Any, context: Any) -> list[dict[str, Any]]:
    s3 = session.client("s3")
    out = []
    for bucket in s3.list_buckets().get("Buckets", []):
        try:
            tagging = s3.get_bucket_tagging(Bucket=bucket["Name"])
            tags = {t["Key"]: t["Value"] for t in tagging["TagSet"]}
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchTagSet":
                raise
            tags = {}
        out.append({"name": bucket["Name"], "tags": tags})
    return out

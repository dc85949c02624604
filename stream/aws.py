"""What the processor uses of its boto3 clients, as types (boto3 ships none).

Each client is a :class:`~typing.Protocol` of the calls the processor makes, with
the arguments it passes and the fields of the answers it reads: a boto3 client
(``boto3.client("s3")``, ...) is one, and so is a test's stand-in with the same
methods.  The answers are :class:`~typing.TypedDict` of those fields only; boto3's
carry more.

>>> import io
>>> class Bucket:  # a stand-in S3 client for one object
...     def get_object(self, *, Bucket: str, Key: str) -> GetObjectOutput:
...         return {"Body": io.BytesIO(b"{}")}
>>> Bucket().get_object(Bucket="b", Key="k")["Body"].read()
b'{}'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Protocol, TypedDict

__all__ = [
    "AttributeValue",
    "DynamoDBClient",
    "GetItemOutput",
    "GetObjectOutput",
    "Item",
    "KinesisClient",
    "ListObjectsOutput",
    "ListObjectsPaginator",
    "PutRecordsEntry",
    "PutRecordsOutput",
    "PutRecordsResult",
    "Readable",
    "S3Client",
    "ScanOutput",
]


# ----------------------------------------------------------------------------- S3
class Readable(Protocol):
    """An object's body (botocore's ``StreamingBody``)."""

    def read(self) -> bytes: ...


class GetObjectOutput(TypedDict):
    Body: Readable
    ETag: str


class _Object(TypedDict):
    Key: str


class _Prefix(TypedDict):
    Prefix: str


class ListObjectsOutput(TypedDict, total=False):
    Contents: list[_Object]
    CommonPrefixes: list[_Prefix]
    IsTruncated: bool
    NextContinuationToken: str


class ListObjectsPaginator(Protocol):
    def paginate(self, *, Bucket: str, Prefix: str) -> Iterable[ListObjectsOutput]: ...


class S3Client(Protocol):
    """The S3 calls of the checkpoints, the registry, the control channel and the events."""

    def put_object(
        self,
        *,
        Bucket: str,
        Key: str,
        Body: bytes,
        ContentType: str,
        IfNoneMatch: str = ...,
        IfMatch: str = ...,
    ) -> object: ...

    def get_object(self, *, Bucket: str, Key: str) -> GetObjectOutput: ...

    def list_objects_v2(
        self,
        *,
        Bucket: str,
        Prefix: str,
        Delimiter: str = ...,
        StartAfter: str = ...,
        ContinuationToken: str = ...,
    ) -> ListObjectsOutput: ...

    def get_paginator(self, operation_name: Literal["list_objects_v2"]) -> ListObjectsPaginator: ...


# ----------------------------------------------------------------------- DynamoDB
# One attribute as DynamoDB's low-level API writes it: {"S": "text"} or {"N": "12"}.
AttributeValue = dict[str, str]
Item = dict[str, AttributeValue]


class GetItemOutput(TypedDict, total=False):
    Item: Item


class ScanOutput(TypedDict, total=False):
    Items: list[Item]
    LastEvaluatedKey: Item


class DynamoDBClient(Protocol):
    """The lease table calls of :class:`stream.lease_table.LeaseTable`."""

    def get_item(
        self, *, TableName: str, Key: Item, ConsistentRead: bool = ...
    ) -> GetItemOutput: ...

    def put_item(self, *, TableName: str, Item: Item) -> object: ...

    def delete_item(self, *, TableName: str, Key: Item) -> object: ...

    def scan(
        self,
        *,
        TableName: str,
        ConsistentRead: bool = ...,
        FilterExpression: str = ...,
        ExpressionAttributeValues: Item = ...,
        ExclusiveStartKey: Item = ...,
    ) -> ScanOutput: ...


# ------------------------------------------------------------------------ Kinesis
class PutRecordsEntry(TypedDict):
    Data: bytes
    PartitionKey: str


class PutRecordsResult(TypedDict, total=False):
    SequenceNumber: str
    ShardId: str
    ErrorCode: str
    ErrorMessage: str


class PutRecordsOutput(TypedDict):
    Records: list[PutRecordsResult]


class KinesisClient(Protocol):
    """The output stream's call of :class:`stream.output.PredictionWriter`."""

    def put_records(
        self, *, StreamName: str, Records: Sequence[PutRecordsEntry]
    ) -> PutRecordsOutput: ...

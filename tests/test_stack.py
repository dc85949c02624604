"""The fixtures start real components that answer."""

import paho.mqtt.client as mqtt


def test_moto_server_serves_kinesis_s3_dynamodb(boto, settings):
    boto("kinesis").create_stream(StreamName=settings.stream, ShardCount=1)
    assert (
        boto("kinesis").describe_stream_summary(StreamName=settings.stream)[
            "StreamDescriptionSummary"
        ]["OpenShardCount"]
        == 1
    )
    boto("s3").create_bucket(Bucket=settings.bucket)
    boto("s3").put_object(Bucket=settings.bucket, Key="k", Body=b"v")
    assert boto("s3").get_object(Bucket=settings.bucket, Key="k")["Body"].read() == b"v"
    assert "TableNames" in boto("dynamodb").list_tables()


def test_mosquitto_accepts_a_qos1_publish(mosquitto):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    info = client.publish("iot/x/telemetry", b"{}", qos=1)
    info.wait_for_publish(5)
    client.loop_stop()
    assert info.is_published()


def test_kinesalite_outlives_a_client_that_aborts_mid_request(tmp_path):
    """A client killed while it sends (a processor or bridge the fault tests SIGKILL) must
    not take the session's Kinesis down: kinesalite 3.3.3 rethrows the request's
    ``ECONNRESET`` from its handler, which ended the process (2 fresh-clone CI runs of 4)."""
    import socket
    import time

    import boto3

    from iotcast.stack import start_kinesalite

    proc = start_kinesalite(tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", proc.port)) as s:
            s.sendall(
                b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.1\r\n"
                b'X-Amz-Target: Kinesis_20131202.ListStreams\r\nContent-Length: 1000\r\n\r\n{"Lim'
            )
            time.sleep(0.3)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        time.sleep(1.0)
        assert proc.alive(), proc.log_tail()
        kinesis = boto3.client(
            "kinesis", endpoint_url=proc.url, region_name="us-east-1",
            aws_access_key_id="x", aws_secret_access_key="x",
        )  # fmt: skip
        assert kinesis.list_streams()["StreamNames"] == []
        assert "ECONNRESET" in proc.log_tail()  # said, not fatal
    finally:
        proc.stop()

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

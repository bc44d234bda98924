"""Line events: results and alarms published over MQTT, alarm rules, coils and roll marks."""

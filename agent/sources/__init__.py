"""Where data comes from: the MQTT broker, cameras, the barn simulator."""

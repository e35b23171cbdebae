"""Camera sources: OpenCV (V4L2, RTSP, HTTP), picamera2, file replay and
generated frames, each behind one interface with a stall watchdog and reconnect."""

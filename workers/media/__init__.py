"""Media layer: safe fetching, type sniffing, image decoding and video frame sampling."""

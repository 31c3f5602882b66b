"""Wire protocol: lwproto codec (board and host), host framing and message views."""

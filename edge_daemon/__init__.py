"""Edge daemon: transport -> framing -> session -> analytics -> outbox -> upstream."""

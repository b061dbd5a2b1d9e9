"Models built in the course, one family per module."

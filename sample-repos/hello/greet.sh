#!/bin/sh
# Writes the greeting the next stage reads back from the shared workspace.
echo "hello, world"

#!/usr/bin/env bash
# The docs test drives Debian's Chromium headless; install it when missing (CI machines start without it).
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq chromium >/dev/null && echo "installed $(chromium --version)"

"""Real desktop pieces for the desktop tests: a private dbus-daemon, Xvfb and a tray host, a test
notification/screensaver server, a headless sway with waybar (wayland.py), each started on free
addresses and stopped afterwards."""

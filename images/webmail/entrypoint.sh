#!/bin/sh
# Starts the webmail: a session key and the SQLite database on the pod's own volume (made on
# first start), then Apache in the foreground.
set -eu
db_dir=/var/roundcube/db
[ -s "$db_dir/des_key" ] || head -c 18 /dev/urandom | base64 >"$db_dir/des_key"
[ -s "$db_dir/roundcube.db" ] || sqlite3 "$db_dir/roundcube.db" </usr/share/roundcube/SQL/sqlite.initial.sql
mkdir -p /tmp/roundcube-temp
exec /usr/sbin/apache2 -f /etc/continuity-webmail/apache2.conf -DFOREGROUND

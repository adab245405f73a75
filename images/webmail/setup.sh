#!/bin/sh
# Builds the webmail image inside its root: Debian's Roundcube behind Apache, both run by the
# unprivileged www-data (uid 33) on port 8000. Run by the Dockerfile, and by hack/images.sh in a
# debootstrap root: one recipe for both.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
# The database is the pod's own SQLite file, made at start: no dbconfig-common setup.
echo "roundcube-core roundcube/dbconfig-install boolean false" | debconf-set-selections
apt-get update -qq
DEBIAN_FRONTEND=noninteractive xargs -a "$here/packages" apt-get install -y -qq --no-install-recommends >/dev/null
install -d /etc/continuity-webmail
install -m 0644 "$here/apache2.conf" /etc/continuity-webmail/apache2.conf
install -m 0644 "$here/config.inc.php" /etc/roundcube/config.inc.php
install -m 0755 "$here/entrypoint.sh" /usr/local/bin/continuity-webmail
# The pod mounts its settings, database and temporary files here (see the operator's
# Deployment); the image works without them too.
install -d -o www-data -g www-data /var/roundcube/config /var/roundcube/db
rm -f /usr/sbin/policy-rc.d
apt-get clean
rm -rf /var/lib/apt/lists/*

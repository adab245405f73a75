#!/bin/sh
# Builds the mail image inside its root: installs ./packages and adds the user Dovecot runs as.
# Run by the Dockerfile, and by hack/images.sh in a debootstrap root: one recipe for both.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
# Packages must not start services while the image is built.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
DEBIAN_FRONTEND=noninteractive xargs -a "$here/packages" apt-get install -y -qq --no-install-recommends >/dev/null
getent group vmail >/dev/null || groupadd --system --gid 1000 vmail
getent passwd vmail >/dev/null ||
  useradd --system --uid 1000 --gid vmail --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vmail
# The pod's configuration replaces these: no default mail system in the image.
rm -f /etc/postfix/main.cf /etc/mailname /usr/sbin/policy-rc.d
apt-get clean
rm -rf /var/lib/apt/lists/*

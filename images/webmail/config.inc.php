<?php
// Roundcube in the continuity webmail image. The operator's settings for a domain (IMAP and
// SMTP hosts, the domain, the temporary directory) come from /var/roundcube/config/*.php,
// included last so they win.
$config = [];
$config['db_dsnw'] = 'sqlite:////var/roundcube/db/roundcube.db?mode=0640';
$config['des_key'] = trim((string) @file_get_contents('/var/roundcube/db/des_key'));
$config['log_driver'] = 'stdout';
$config['enable_installer'] = false;
$config['plugins'] = [];
$config['skin'] = 'elastic';
$config['temp_dir'] = '/tmp/roundcube-temp';
foreach (glob('/var/roundcube/config/*.php') ?: [] as $file) {
    include $file;
}

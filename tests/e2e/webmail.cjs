// Drives the standby's Roundcube in headless Chromium (Debian's), as a user would: logs in
// with the emergency password, finds a message by its subject, replies, and waits for
// Roundcube to confirm the reply was sent. Run by tests/e2e/webmail.rs:
//   node webmail.cjs URL USER PASSWORD SUBJECT SCREENSHOTS_DIR
// playwright-core comes from NODE_PATH (hack/e2e.sh installs it, cached; CommonJS, as only
// require() reads NODE_PATH). Exit 0 on success.
const { chromium } = require('playwright-core');

async function main() {

const [url, user, password, subject, screenshots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage();
const step = async (name, action) => {
  try {
    await action();
  } catch (error) {
    await page.screenshot({ path: `${screenshots}/${name}.png`, fullPage: true }).catch(() => {});
    console.error(`webmail: ${name} failed: ${error.message}`);
    await browser.close();
    process.exit(1);
  }
};
await step('login', async () => {
  await page.goto(url, { timeout: 60000 });
  await page.fill('input[name=_user]', user);
  await page.fill('input[name=_pass]', password);
  await page.click('button[type=submit]');
  await page.waitForSelector('#messagelist', { timeout: 60000 });
});
await step('message', async () => {
  const row = page.locator('#messagelist tr', { hasText: subject }).first();
  await row.waitFor({ timeout: 60000 });
  await row.dblclick();
  await page.waitForURL(/_action=show/, { timeout: 60000 });
});
await step('reply', async () => {
  await page.locator('a.reply:not(.all):visible').first().click();
  await page.waitForSelector('#composebody', { timeout: 60000 });
  await page.fill('#composebody', 'Replied from the continuity webmail.');
  await page.locator('button.send:visible, a.send:visible').first().click();
  // Roundcube leaves the compose screen only once the message is sent; its "Message sent
  // successfully" notice lasts a few seconds and was missed once on a loaded machine (the
  // reply had gone). The Rust side checks the reply reached the relay.
  await page.waitForURL((url) => !/_action=compose/.test(url.toString()), { timeout: 60000 });
});
await page.screenshot({ path: `${screenshots}/sent.png`, fullPage: true });
await browser.close();
console.log('webmail: logged in, read the message, replied');
}

main();

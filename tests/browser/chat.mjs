// A customer, an agent and a supervisor in Debian's chromium (headless, driven by
// playwright-core; no browser download) against a running edge:
//   node chat.mjs http://127.0.0.1:PORT AGENT_TOKEN SUPERVISOR_TOKEN
// Exits non-zero with a message on the first thing that does not happen.
import { chromium } from "playwright-core";

const [base, agentToken, supToken] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const T = { timeout: 10000 };
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
const fail = async (msg) => {
  console.error("FAIL: " + msg);
  await browser.close();
  process.exit(1);
};
const step = (s) => console.log("step: " + s);

try {
  const cust = await (await browser.newContext()).newPage();
  const agent = await (await browser.newContext()).newPage();
  const sup = await (await browser.newContext()).newPage();
  for (const p of [cust, agent, sup]) p.on("pageerror", (e) => fail("page error: " + e.message));

  step("agent signs in to /console");
  await agent.goto(base + "/console");
  await agent.fill("#token", agentToken);
  await agent.click("#connect");
  await agent.waitForSelector("#app:not(.hidden)", T);

  step("customer starts from /chat");
  await cust.goto(base + "/chat?queue=web");
  await cust.fill("#f-name", "Cy Browser");
  await cust.fill("#f-order", "A-99");
  await cust.click("#start-btn");
  await cust.waitForSelector("#compose:not(.hidden)", T);

  step("agent accepts the offer");
  await agent.waitForSelector(".offer .accept", T);
  const offerText = await agent.textContent(".offer");
  if (!offerText.includes("Cy Browser")) await fail("offer without the customer's name: " + offerText);
  await agent.click(".offer .accept");
  await cust.waitForSelector("text=joined the conversation", T);

  step("messages both ways");
  await cust.fill("#text", "hello from the browser");
  await cust.press("#text", "Enter");
  await agent.waitForSelector(".msg.customer >> text=hello from the browser", T);
  await agent.fill(".chat.active .send input[type=text]", "hi Cy, how can I help?");
  await agent.press(".chat.active .send input[type=text]", "Enter");
  await cust.waitForSelector(".msg.agent >> text=hi Cy, how can I help?", T);

  step("a private note stays with the agents");
  await agent.fill(".chat.active .send input[type=text]", "internal note");
  await agent.check(".chat.active .priv");
  await agent.press(".chat.active .send input[type=text]", "Enter");
  await agent.waitForSelector(".msg.private >> text=internal note", T);

  step("supervisor watches silently");
  await sup.goto(base + "/console");
  await sup.fill("#token", supToken);
  await sup.click("#connect");
  await sup.waitForSelector("#live .watch", T);
  await sup.click("#live .watch");
  await sup.waitForSelector(".msg >> text=hello from the browser", T);
  await sup.waitForSelector(".msg.private >> text=internal note", T);
  if (await sup.isVisible(".chat.active .send")) await fail("the supervisor can write into the chat");

  step("customer refreshes: the chat is restored");
  await cust.reload();
  await cust.waitForSelector(".msg.agent >> text=hi Cy, how can I help?", T);
  await cust.waitForSelector(".msg.customer >> text=hello from the browser", T);
  if (await cust.isVisible("#start")) await fail("start form shown after refresh");
  const count = await cust.locator(".msg >> text=hello from the browser").count();
  if (count !== 1) await fail(`message shown ${count} times after refresh`);
  if (await cust.locator("text=internal note").count()) await fail("the customer sees a private note");
  await cust.fill("#text", "after the refresh");
  await cust.press("#text", "Enter");
  await agent.waitForSelector(".msg.customer >> text=after the refresh", T);
  await sup.waitForSelector(".msg >> text=after the refresh", T);

  step("customer ends the chat");
  await cust.click("#end");
  await cust.waitForSelector("text=The chat has ended.", T);
  await agent.waitForSelector(".msg >> text=Chat ended", T);
  console.log("OK");
  await browser.close();
} catch (e) {
  await fail(e.message);
}

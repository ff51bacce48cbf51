from playwright.async_api import async_playwright
args=["--headless","--no-sandbox","--disable-gpu","--disable-background-networking","--disable-component-update"]

async def test_b():
    async with async_playwright() as p2:
        b2 = await p2.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        pg = await b2.new_page(); await pg.set_content("<p>hi</p>"); assert await pg.text_content("p") == "hi"
        await b2.close()

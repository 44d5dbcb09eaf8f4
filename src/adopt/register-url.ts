/** The `--import` argument that preloads zero-code adoption (dist/src/adopt/register.js) into a Node process. */
export const REGISTER_URL = new URL('./register.js', import.meta.url).href;

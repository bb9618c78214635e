/** The package version; a test checks it against package.json. */
const version = '0.1.0';
export {version};

'use strict';
// Removes dist/ before a build, so a file deleted from src/ cannot linger in a packed tarball.
const fs = require('fs');
const path = require('path');

fs.rmSync(path.join(__dirname, '..', 'dist'), {recursive: true, force: true});

import './styles.css';

import { App } from './app';

new App(document.getElementById('app')!).start();

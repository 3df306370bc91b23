from setuptools import setup, find_packages
import shlex, configparser

# nbdev 2 template, minus pkg_resources (gone from setuptools >= 81)
config = configparser.ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']
licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable',
            '6 - Mature', '7 - Inactive']
lic = licenses[cfg['license']]
req = lambda k: shlex.split(cfg.get(k, ''))
requirements = req('requirements')
extras = {'dev': req('dev_requirements'), 'serve': req('serve_requirements'), 'track': req('track_requirements'), 'vllm': req('vllm_requirements')}
setup(
    name=cfg['lib_name'], version=cfg['version'], license=lic[0],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'License :: ' + lic[1], 'Natural Language :: ' + cfg['language'].title(),
                 'Programming Language :: Python :: 3.11', 'Programming Language :: Python :: 3.12'],
    url=cfg['git_url'], packages=find_packages(include=['dnr', 'dnr.*']), include_package_data=True,
    package_data={'dnr': ['resources/*', 'resources/**/*']},
    install_requires=requirements, extras_require=extras, python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read(), long_description_content_type='text/markdown',
    zip_safe=False, entry_points={'console_scripts': cfg.get('console_scripts').split(), 'nbdev': ['dnr=dnr._modidx:d']},
    author=cfg['author'], author_email=cfg['author_email'], description=cfg['description'],
    keywords=cfg['keywords'])

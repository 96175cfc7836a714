# One image for web, worker and beat; docker-compose.yml picks the command.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gettext postgresql-client nodejs npm \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . .
RUN pip install --upgrade pip && pip install -e .
# Front-end libraries from the npm registry, as the Makefile does (exact versions).
RUN mkdir -p build/npm static/vendor \
 && cp frontend/package.json frontend/package-lock.json build/npm/ \
 && npm ci --prefix build/npm --no-audit --no-fund --ignore-scripts --loglevel=error \
 && cp build/npm/node_modules/echarts/dist/echarts.min.js static/vendor/
# Build-time steps need settings but no secrets or services.
RUN SCRM_DEVELOPMENT=1 python manage.py compilemessages --ignore=.venv -v 0 \
 && SCRM_DEVELOPMENT=1 python manage.py collectstatic --noinput -v 0

# /data/media is the shared volume (docker-compose.yml); a new volume takes this owner.
RUN useradd --create-home scrm && mkdir -p /data/media && chown -R scrm /app /data/media
USER scrm
EXPOSE 8000
CMD ["gunicorn", "scrm.wsgi", "-b", "0.0.0.0:8000", "-w", "4", "--access-logfile", "-"]

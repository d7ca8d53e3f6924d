# The image the Helm chart runs (API, operator and engine share it). The control plane is not in
# it: inside a real cluster the simulator uses that cluster (the chart can add KWOK for fake nodes).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY k8sim k8sim
COPY api api
COPY operator operator
COPY engine engine
COPY cluster cluster
ENV PYTHONDONTWRITEBYTECODE=1
RUN pip install --no-cache-dir -e . && useradd --uid 10001 k8sim
USER 10001
EXPOSE 6360 6381
CMD ["python", "-m", "k8sim_api"]

# Staging and production differ only in sizes, counts and names: the same address plan,
# in separate AWS accounts. Give one another CIDR before ever peering the two VPCs.
region             = "eu-west-1"
name               = "magento-production"
cidr               = "10.0.0.0/16"
azs                = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
single_nat_gateway = false
cluster_name       = "magento-production"
tags = {
  environment = "production"
  managed-by  = "terraform"
}
